import pytest

from obsctl.errors import InvalidDeviceValueError

from ._wait import until


async def test_names_and_offsets(devices) -> None:
    wheel = devices.filter_wheel
    names = await wheel.names()
    assert names == ["L", "B", "V", "R", "I"]
    assert len(await wheel.focus_offsets()) == len(names)


async def test_move_reports_none_while_moving(devices) -> None:
    wheel = devices.filter_wheel
    start = await wheel.position()
    target = 4 if start != 4 else 0
    await wheel.move(target)
    assert await wheel.position() is None

    async def arrived() -> bool:
        return await wheel.position() == target

    await until(arrived)


@pytest.mark.parametrize("slot", [-1, 5, 99])
async def test_bad_slot(devices, slot) -> None:
    with pytest.raises(InvalidDeviceValueError):
        await devices.filter_wheel.move(slot)
