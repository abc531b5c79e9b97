"""The exposure clock: camera timestamps onto the host clock, and which frames are stale."""

from pipeline.parts.sources.exposure import ExposureClock

MS = 1_000_000


def test_frames_are_placed_at_camera_time_plus_the_fastest_path():
    clock = ExposureClock()
    assert clock.place(0, 100 * MS) == (100 * MS, False)
    assert clock.place(40 * MS, 130 * MS) == (130 * MS, False), "a faster path lowers the offset"
    assert clock.place(80 * MS, 185 * MS) == (170 * MS, False), "jitter below the limit: placed, not stale"


def test_a_frame_handed_over_late_for_its_own_timestamp_is_stale():
    clock = ExposureClock()
    clock.place(0, 100 * MS)
    exposure, stale = clock.place(40 * MS, 2_000 * MS)  # a frozen server's in-flight frame, 2 s on
    assert stale and exposure == 140 * MS
    assert clock.place(None, 2_100 * MS) == (2_100 * MS, True), "no timestamp from a stream that had them"


def test_a_burst_or_a_trickle_of_late_frames_never_rebases_but_a_slower_path_does():
    clock = ExposureClock()
    clock.place(0, 0)
    burst = [clock.place(i * 40 * MS, 5_000 * MS + i * MS)[1] for i in range(1, 60)]
    assert all(burst), "buffered frames after a freeze: all stale"
    clock = ExposureClock()
    clock.place(0, 0)
    later = [clock.place(i * 40 * MS, 3_000 * MS + i * 40 * MS)[1] for i in range(1, 40)]
    assert later[0] and not later[-1], "late frames arriving in real time for 1 s: the new delay is learnt"


def test_timestamps_going_backwards_start_a_new_time_base():
    clock = ExposureClock()
    clock.place(10_000 * MS, 10_000 * MS)
    assert clock.place(0, 20_000 * MS) == (20_000 * MS, False)
