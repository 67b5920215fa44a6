"""Camera endpoints; the rollout decides which implementation serves each call."""
from fastapi import APIRouter, Depends, Query

from ..deps import implementation
from ..schemas import AutoStartBody, BatchStatusBody

router = APIRouter(prefix="/api/v1/cameras", tags=["cameras"])


@router.post("/refresh")
def refresh(impl=Depends(implementation)):
    return impl.refresh()


@router.post("/batch-status")
def batch_status(body: BatchStatusBody, impl=Depends(implementation)):
    return impl.batch_status(body.camera_ids)


@router.post("/{camera_id}/start")
def start(camera_id: str, impl=Depends(implementation)):
    return impl.camera_action(camera_id, "start")


@router.post("/{camera_id}/stop")
def stop(camera_id: str, impl=Depends(implementation)):
    return impl.camera_action(camera_id, "stop")


@router.post("/{camera_id}/restart")
def restart(camera_id: str, impl=Depends(implementation)):
    return impl.camera_action(camera_id, "restart")


@router.post("/{camera_id}/activate")
def activate(camera_id: str, impl=Depends(implementation)):
    return impl.camera_action(camera_id, "activate")


@router.post("/{camera_id}/deactivate")
def deactivate(camera_id: str, impl=Depends(implementation)):
    return impl.camera_action(camera_id, "deactivate")


@router.put("/{camera_id}/auto-start")
def auto_start(camera_id: str, body: AutoStartBody, impl=Depends(implementation)):
    return impl.camera_action(camera_id, "enable_auto_start" if body.enabled else "disable_auto_start")


@router.get("/{camera_id}/status")
def status(camera_id: str, impl=Depends(implementation)):
    return impl.camera_status(camera_id)


@router.get("/{camera_id}/logs")
def logs(camera_id: str, limit: int = Query(20, ge=1, le=100), impl=Depends(implementation)):
    return impl.camera_logs(camera_id, limit)
