from tiny_node.gaps import MAX_MISSING, GapCounter


def test_counts_sequence_gaps_per_publisher():
    g = GapCounter()
    assert g.observe(b"a", 1) == 0
    assert g.observe(b"a", 2) == 0
    assert g.observe(b"a", 5) == 2  # 3 and 4 lost
    assert g.observe(b"b", 10) == 0  # another publisher starts its own count
    assert g.observe(b"a", 5) == 0  # a duplicate: nothing
    assert g.observe(b"b", 12) == 1
    assert g.lost == 3


def test_a_reordered_sample_filling_its_gap_is_no_loss():
    """1, 3, 2, 4 read as one sample lost: the gap was counted when seen and never taken back (review)."""
    g = GapCounter()
    assert [g.observe(b"a", s) for s in (1, 3, 2, 4)] == [0, 1, -1, 0]
    assert g.lost == 0
    assert g.observe(b"a", 2) == 0 and g.lost == 0  # its duplicate: no gain
    # a jump beyond what is remembered: the oldest missing numbers are forgotten, still counted lost
    assert g.observe(b"a", 4 + 2 * MAX_MISSING + 1) == 2 * MAX_MISSING and g.lost == 2 * MAX_MISSING
    assert g.observe(b"a", 5) == 0 and g.observe(b"a", 4 + 2 * MAX_MISSING) == -1
