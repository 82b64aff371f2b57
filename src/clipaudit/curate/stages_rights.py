"""(rights signals: to be written.)"""
