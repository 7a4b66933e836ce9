"""Request and response bodies. Bounds come from the server's settings, so the OpenAPI schema a
client reads states the same limits the server enforces (R11)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    create_model,
    field_validator,
)

from tasktune.serving.settings import ServeSettings

TaskName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=100)]
RequestId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]


def _registry_alias(value: str) -> str:
    # The registry's own rule (lowercase, not 'latest' or a version number), checked with the body:
    # an alias it would refuse must fail the request before the pool has switched anything.
    from tasktune.registry.errors import UnsafeNameError
    from tasktune.registry.names import check_alias

    try:
        return check_alias(value)
    except UnsafeNameError as err:
        raise ValueError(str(err)) from None


Alias = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=64), AfterValidator(_registry_alias)
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _PredictBase(_Body):
    @field_validator("texts", "text_pairs", check_fields=False)
    @classmethod
    def _not_blank(cls, v: list[str] | None) -> list[str] | None:
        for i, text in enumerate(v or ()):
            if not text.strip():
                raise ValueError(f"item {i} is empty or only whitespace; send the text to classify")
        return v


def predict_request_model(settings: ServeSettings) -> type[BaseModel]:
    Text = Annotated[str, StringConstraints(min_length=1, max_length=settings.max_text_chars)]
    Texts = Annotated[list[Text], Field(min_length=1, max_length=settings.max_texts)]
    return create_model(
        "PredictRequest",
        __base__=_PredictBase,
        task=(TaskName, Field(description="the task to classify for")),
        texts=(Texts, Field(description="the texts; one prediction each")),
        text_pairs=(Texts | None, Field(None, description="second texts of pair tasks, one per text")),
        version=(int | None, Field(None, ge=1, description="pin a loaded version (default: the active one)")),
        key=(
            Annotated[str, StringConstraints(min_length=1, max_length=200)] | None,
            Field(None, description="stable user/session key for A/B assignment (default: the request id)"),
        ),
        deadline_ms=(
            float | None,
            Field(None, gt=0, le=settings.deadline_ms, description="answer within this or get 504"),
        ),
    )


class Prediction(_Body):
    label: str
    label_index: int
    confidence: float
    probabilities: dict[str, float]


class PredictResponse(_Body):
    request_id: str
    task: str
    version: int
    route: str
    arm: Literal["A", "B"] | None = None
    predictions: list[Prediction]
    latency_ms: float


def feedback_request_model(settings: ServeSettings) -> type[BaseModel]:
    Label = (
        Annotated[str, StringConstraints(min_length=1, max_length=200)] | Annotated[int, Field(ge=0)] | None
    )
    return create_model(
        "FeedbackRequest",
        __base__=_Body,
        request_id=(RequestId, Field(description="the request_id a prediction answered with")),
        labels=(
            Annotated[list[Label], Field(min_length=1, max_length=settings.max_texts)],
            Field(description="the true label (name or index) of each text of that request; null: unknown"),
        ),
    )


class FeedbackResponse(_Body):
    request_id: str
    recorded: int
    unchanged: int


class LoadBody(_Body):
    ref: str | int = Field("latest", description="version number, 'vN', 'latest' or an alias")


class ActivateBody(LoadBody):
    alias: Alias | None = Field(None, description="also point this registry alias at the version")


class UnloadBody(_Body):
    version: int = Field(ge=1)


class ABBody(_Body):
    a: int = Field(ge=1, description="the version now serving (control)")
    b: int = Field(ge=1, description="the challenger")
    share_b: float = Field(0.1, gt=0, lt=1, description="fraction of traffic sent to B")


class PromoteBody(_Body):
    arm: Literal["A", "B"] = "B"
    alias: Alias | None = "production"


class ErrorDetail(BaseModel):
    type: str
    message: str
    field: str | None = None
    request_id: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail
