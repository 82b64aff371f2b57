"""(watermark signals: to be written.)"""
