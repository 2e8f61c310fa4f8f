"""The long words of BPE training (minified code, base64, a long table rule), merged in time
proportional to the occurrences merged rather than to their length."""

from __future__ import annotations

import array
import collections

# Training words longer than this many bytes go to `LongWords`: the list path scans a word and
# splices the list once per occurrence, O(len) each, so one long pre-token (a line of minified
# code, base64, a long table rule) cost O(len**2). Shorter words keep the list path, which is
# faster and smaller for them.
LONG_WORD_SYMBOLS = 64


class LongWords:
    """The long training words, merged through the recorded positions of each pair.

    Each word is three arrays over its original byte positions: `symbols` (-1 once merged into
    its left neighbour) and the `prev`/`next` links of the live ones, so positions keep their
    left-to-right order. `positions[pair key]` lists, as `word index << bits | position`, where
    that pair started when it appeared; entries go stale when a neighbour merges and are checked
    when used. A merge thus touches only the occurrences of its pair, in words and in order.
    """

    def __init__(self, stride: int, longest: int):
        self.stride = stride
        self.bits = longest.bit_length()  # positions take the low bits of an entry
        self.words: dict[int, tuple[array.array, array.array, array.array]] = {}
        self.positions: dict[int, array.array] = collections.defaultdict(lambda: array.array("q"))

    def add(self, index: int, word: list[int], count: int, pair_counts: dict[int, int]) -> None:
        n, stride, positions = len(word), self.stride, self.positions
        link_type = "i" if n < 1 << 31 else "q"  # 4 bytes a link (a list of ints takes 8 + 28)
        self.words[index] = (array.array("i", word), array.array(link_type, range(-1, n - 1)),
                             array.array(link_type, range(1, n + 1)))  # n: no next symbol
        base = index << self.bits
        for position, (a, b) in enumerate(zip(word, word[1:])):
            pair_counts[a * stride + b] += count
            positions[a * stride + b].append(base | position)

    def merge(self, a: int, b: int, new_id: int, counts: list[int], pair_counts: dict[int, int],
              increased: set[int]) -> None:
        """Merge the occurrences of (a, b) as `train.apply_merge` does in a list, with the same counting."""
        stride, bits, positions = self.stride, self.bits, self.positions
        merged_key = a * stride + b
        mask = (1 << bits) - 1
        for entry in sorted(positions.pop(merged_key, ())):  # word by word, left to right
            index, i = entry >> bits, entry & mask
            symbols, prev, next_ = self.words[index]
            end = len(symbols)
            j = next_[i]
            if symbols[i] != a or j == end or symbols[j] != b:
                continue  # stale: a neighbour merged since this pair was recorded here
            count = counts[index]
            pair_counts[merged_key] -= count
            replaced = []  # (lost pair, gained pair, its position) on each side of this occurrence
            h = prev[i]
            if h >= 0:  # the left neighbour now pairs with the new token
                left = symbols[h]
                replaced.append(((b if left == new_id else left) * stride + a, left * stride + new_id, h))
            k = next_[j]
            if k != end:
                right = symbols[k]
                after = next_[k]
                # The right neighbour, unless it starts the next occurrence (handled as its left).
                if not (right == a and after != end and symbols[after] == b):
                    replaced.append((b * stride + right, new_id * stride + right, i))
                prev[k] = i
            for lost_key, gained_key, position in replaced:
                pair_counts[lost_key] -= count
                pair_counts[gained_key] += count
                positions[gained_key].append(index << bits | position)
                increased.add(gained_key)
            symbols[i] = new_id
            symbols[j] = -1
            next_[i] = k
