"""Input/output: ONE-api / ALF loading (``neds.io.ibl``) and Zarr stores (``neds.io.store``)."""
