import gc

from picobot.runtime import collector


def test_tune_collects_the_young_generation_less_often_and_keeps_the_others() -> None:
    before = gc.get_threshold()
    try:
        collector.tune()
        assert gc.get_threshold() == (collector.YOUNG, *before[1:])
        assert collector.YOUNG > before[0]
    finally:
        gc.set_threshold(*before)
