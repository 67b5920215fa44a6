"""Alert-rule endpoints; the rollout decides which implementation serves each call."""
from fastapi import APIRouter, Depends

from ..deps import implementation
from ..schemas import AlertRuleCreate, AlertRuleUpdate

router = APIRouter(prefix="/api/v1/alerts/rules", tags=["alert rules"])


@router.get("")
def list_rules(impl=Depends(implementation)):
    return impl.list_rules()


@router.post("", status_code=201)
def create_rule(body: AlertRuleCreate, impl=Depends(implementation)):
    return impl.create_rule(body.model_dump())


@router.put("/{rule_id}")
def update_rule(rule_id: int, body: AlertRuleUpdate, impl=Depends(implementation)):
    return impl.update_rule(rule_id, body.changes())
