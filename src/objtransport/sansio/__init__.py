"""The pure core of objtransport: no asyncio, socket, ssl, time or random in here.

Every object takes bytes and intents in, gives events and bytes out, and takes the current
time as an argument (``now``, seconds on any monotonic clock the caller chooses).
"""
