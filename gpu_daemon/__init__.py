"""The shift worker: model loading, batched inference, proxy tasks; one process per device."""
