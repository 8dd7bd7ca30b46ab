"""The training side: seeds, groups and devices, training one group with skorch,
the SWAG callbacks and the thread choice."""
