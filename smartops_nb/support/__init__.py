"""Small idioms every layer uses, one definition each, importing nothing else of SmartOps.

* :mod:`.reasons`: an exception or a message as one line (findings, logs, CLI errors, records);
* :mod:`.files`: fsynced writes, atomic replacement, an advisory ``flock``.
"""
