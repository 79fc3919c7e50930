"""Import every model module so `Base.metadata` describes the whole schema (Alembic, tests)."""

from __future__ import annotations

from salesarck.db import models  # noqa: F401  the seed's tables
from salesarck.db.base import Base
from salesarck.pos import models as pos_models  # noqa: F401
from salesarck.pos import webhook_models  # noqa: F401
from salesarck.reconcile import models as reconcile_models  # noqa: F401
from salesarck.rewards import models as rewards_models  # noqa: F401

metadata = Base.metadata
