"""Pipeline adapters, one package per pipeline; see :mod:`trajplate.pipelines.base`."""
