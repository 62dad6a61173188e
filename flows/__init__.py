"""Newsletter briefing pipeline: ingest → join → render → deliver → publish, orchestrated with Prefect."""

__version__ = "0.1.0"
