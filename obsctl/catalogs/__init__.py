"""Reference catalogues fetched over TAP, once, into the local catalogue.

Where this sits in the flow: before the night (``obsctl catalog fetch --plan``) and at the
night runner's start (a background prefetch), the fields of a plan are fetched from Gaia DR3,
APASS or ATLAS-RefCat2 (`providers`, through pyvo) into ``data/catalog.sqlite``
(`obsctl.store.refcat`), with missing bands derived by colour transformations (`bands`) and
a record of each cone so that nothing is fetched twice (`prefetch`). The pipeline never waits
on the network: its astrometry and zero-point stages read only the local catalogue, moved to
the frame's epoch by the stars' proper motions; frames that found no stars are flagged and
queued again once their field arrives.
"""

from obsctl.catalogs.bands import complete_bands, from_gaia
from obsctl.catalogs.prefetch import (
    FetchReport,
    Field,
    fetch_fields,
    field_radius_deg,
    make_provider,
    plan_fields,
    prefetch_plan,
    requeue_covered,
    start_prefetch,
)
from obsctl.catalogs.providers import (
    ApassVizier,
    AtlasVizier,
    CatalogProvider,
    GaiaTap,
    run_tap,
)

__all__ = [
    "ApassVizier",
    "AtlasVizier",
    "CatalogProvider",
    "FetchReport",
    "Field",
    "GaiaTap",
    "complete_bands",
    "fetch_fields",
    "field_radius_deg",
    "from_gaia",
    "make_provider",
    "plan_fields",
    "prefetch_plan",
    "requeue_covered",
    "run_tap",
    "start_prefetch",
]
