"""The Redis signature store (private: use the public API in ``mageflow``)."""
