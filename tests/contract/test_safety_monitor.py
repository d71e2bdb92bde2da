async def test_reflects_simulated_state(devices, sims) -> None:
    monitor = devices.safety_monitor
    assert await monitor.is_safe()
    sims.observatory.safety_monitor.set_safe(False)
    assert not await monitor.is_safe()
    sims.observatory.safety_monitor.set_safe(True)
    assert await monitor.is_safe()
