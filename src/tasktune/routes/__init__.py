"""Routes: how a model is adapted to a task. Importing this package registers every built-in route and
the restorers that rebuild a served route's scorer from its registry artifact."""

from tasktune.routes.finetuning import restore as _finetuning_restore  # noqa: F401  (3 restorers)
from tasktune.routes.finetuning import route as _finetuning  # noqa: F401  (registers 3 routes)
from tasktune.routes.majority import route as _majority  # noqa: F401  (registers "majority")
from tasktune.routes.prompt_tuning import restore as _prompt_tuning_restore  # noqa: F401  (3 restorers)
from tasktune.routes.prompt_tuning import route as _prompt_tuning  # noqa: F401  (registers 3 routes)
from tasktune.routes.prompting import restore as _prompting_restore  # noqa: F401  (1 restorer)
from tasktune.routes.prompting import route as _prompting  # noqa: F401  (registers "prompting")
from tasktune.routes.registry import ROUTES, get_route, register_route
from tasktune.routes.restore import RESTORERS, register_restorer, restore_scorer, restore_task

__all__ = [
    "RESTORERS",
    "ROUTES",
    "get_route",
    "register_restorer",
    "register_route",
    "restore_scorer",
    "restore_task",
]
