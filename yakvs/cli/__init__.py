"""Console scripts: ``yakvs-server``, ``yakvs-raft`` and ``yakvs-client``."""
