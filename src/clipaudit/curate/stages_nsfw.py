"""(nsfw signals: to be written.)"""
