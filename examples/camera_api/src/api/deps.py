"""Route dependencies."""
from fastapi import Query, Request


def implementation(request: Request, force_domain: bool | None = Query(
        None, description="true: serve with the domain implementation, false: with legacy; "
                          "omitted: decided by USE_DOMAIN_SERVICE and ROLLOUT_PERCENT")):
    """The implementation RolloutMiddleware chose for this request.

    force_domain is declared here so it is documented and validated (422 on garbage);
    the middleware already applied it, since it must decide before routing.
    """
    return request.app.state.implementations[request.state.implementation]
