"""(optout signals: to be written.)"""
