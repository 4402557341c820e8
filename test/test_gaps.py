from tiny_node.gaps import GapCounter


def test_counts_sequence_gaps_per_publisher():
    g = GapCounter()
    assert g.observe(b"a", 1) == 0
    assert g.observe(b"a", 2) == 0
    assert g.observe(b"a", 5) == 2  # 3 and 4 lost
    assert g.observe(b"b", 10) == 0  # another publisher starts its own count
    assert g.observe(b"a", 4) == 0  # late / reordered: not a loss
    assert g.observe(b"b", 12) == 1
    assert g.lost == 3
