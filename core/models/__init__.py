"""Models: the registry of loadable encoders, the tiny test model, layer removal and the e5 conversion."""
