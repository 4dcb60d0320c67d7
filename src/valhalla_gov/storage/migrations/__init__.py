"""The Alembic environment: runs an application's migration scripts (its
``version_locations``) on a connection handed in by
:func:`valhalla_gov.storage.sql_backend.upgrade`."""
