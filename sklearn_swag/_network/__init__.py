"""The network side: the default MLP, networks rewritten into batched operations
over the particles, and the stack of particles that trains as one network."""
