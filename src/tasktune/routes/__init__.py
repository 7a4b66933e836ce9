"""Routes: how a model is adapted to a task. Importing this package registers every built-in route."""

from tasktune.routes.finetuning import route as _finetuning  # noqa: F401  (registers 3 routes)
from tasktune.routes.majority import route as _majority  # noqa: F401  (registers "majority")
from tasktune.routes.prompt_tuning import route as _prompt_tuning  # noqa: F401  (registers 3 routes)
from tasktune.routes.prompting import route as _prompting  # noqa: F401  (registers "prompting")
from tasktune.routes.registry import ROUTES, get_route, register_route

__all__ = ["ROUTES", "get_route", "register_route"]
