"""The training side: seeds, devices, the training plan, training one group with
skorch, the SWAG callbacks, the history and the thread choice."""
