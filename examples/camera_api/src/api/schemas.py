"""Request bodies and the camera-action vocabulary shared by both implementations (the API contract)."""
from typing import Literal

from pydantic import BaseModel, Field

Operator = Literal[">", "<", ">=", "<=", "=="]
NOT_BLANK = r"\S"  # at least one non-space character

ACTION_MESSAGES = {
    "start": "camera started",
    "stop": "camera stopped",
    "restart": "camera restarted",
    "activate": "camera activated",
    "deactivate": "camera deactivated",
    "enable_auto_start": "auto-start enabled",
    "disable_auto_start": "auto-start disabled",
}


class AlertRuleCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200, pattern=NOT_BLANK)
    camera_id: str | None = None
    metric: str = Field(min_length=1, max_length=200, pattern=NOT_BLANK)
    operator: Operator
    threshold: float = Field(allow_inf_nan=False)
    enabled: bool = True


class AlertRuleUpdate(BaseModel):
    name: str | None = Field(None, min_length=1, max_length=200, pattern=NOT_BLANK)
    camera_id: str | None = None
    metric: str | None = Field(None, min_length=1, max_length=200, pattern=NOT_BLANK)
    operator: Operator | None = None
    threshold: float | None = Field(None, allow_inf_nan=False)
    enabled: bool | None = None

    def changes(self) -> dict:
        """Fields the client sent; null means "unchanged" except for camera_id, where it clears it."""
        sent = self.model_dump(exclude_unset=True)
        return {k: v for k, v in sent.items() if v is not None or k == "camera_id"}


class AutoStartBody(BaseModel):
    enabled: bool


class BatchStatusBody(BaseModel):
    camera_ids: list[str] = Field(max_length=500)
