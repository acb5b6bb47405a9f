from temporalio.client import WorkflowExecutionStatus  # noqa: F401


async def test_dev_server_has_search_attributes(dev_env) -> None:  # type: ignore[no-untyped-def]
    from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest

    resp = await dev_env.client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=dev_env.client.namespace)
    )
    assert {"NotificationId", "NotificationType", "NotificationStatus", "MerchantId"} <= set(
        resp.custom_attributes
    )


async def test_time_skipping_server_starts(skip_env) -> None:  # type: ignore[no-untyped-def]
    assert skip_env.supports_time_skipping
