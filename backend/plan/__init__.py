"""The compensation plan engine (DESIGN §4): plan configuration, pure step functions, slot
leases and an in-memory driver. No I/O except reading a plan file when asked."""
