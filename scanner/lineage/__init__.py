"""Asset lineage, the dbt manifest importer, OpenLineage event ingestion and the declared-versus-observed comparison."""
