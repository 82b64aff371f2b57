"""(visible-watermark detector stage: to be written.)"""
