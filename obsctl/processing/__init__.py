"""Pure numeric functions over numpy arrays and tables: no I/O, no logging, no asyncio."""
