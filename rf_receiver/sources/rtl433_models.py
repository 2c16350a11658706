"""rtl_433's fixed-code remote models, mapped back to the code the GPIO path reads off the
air, so a box can change source without relearning its remotes: the same code goes
through the same decoder and gets the same remote and button.

Each entry turns one rtl_433 message into (protocols to try, bit count, code), following
that model's decoder in rtl_433: what it prints is the frame's bits, regrouped. rtl_433
counts a short mark as 1 where the rc-switch convention used here counts a long one.
Where rtl_433 leaves bits out of its message, the mapping fills in the ones every such
remote sends; where it cannot (the Silvercrest remote's own id), the note says so.
"""
from __future__ import annotations

from typing import Callable

Mapping = Callable[[dict], tuple[str | tuple[str, ...], int, int]]


def _int(v) -> int:
    """An rtl_433 number: an int, or text in decimal or 0x-hex."""
    if isinstance(v, bool):
        raise ValueError("not a number")
    if isinstance(v, int):
        return v
    return int(str(v), 0)


def _pairs(rtl_bits: list[int]) -> int:
    """PT2262-style pairs whose first half is always a short mark and whose second half
    carries the information (rtl_433 bit 1 = short): the 24-bit code in our convention."""
    code = 0
    for b in rtl_bits:
        code = code << 2 | (0 if b else 1)
    return code


def generic_remote(m: dict):
    # rtl_433's Generic-Remote reads SC226x/PT2262 and EV1527 alike: 16-bit id, 8-bit cmd
    return ("PT2262", "EV1527"), 24, _int(m["id"]) << 8 | _int(m["cmd"])


def smoke_gs558(m: dict):
    # its decoder prints the 24 bits last-first
    return "EV1527", 24, int(format(_int("0x" + str(m["code"])), "024b")[::-1], 2)


def ev1527_id_cmd(m: dict):
    # Chuango, Kerui: a 20-bit id and a 4-bit command, as EV1527 sends them
    return "EV1527", 24, _int(m["id"]) << 4 | _int(m["cmd_id"] if "cmd_id" in m else m["cmd"])


WAVEMAN_STATE = {"ON": 0xE, "OFF": 0x6}


def waveman(m: dict):
    # 12 pairs in three nibbles: the house letter, (channel - 1) << 2 | (button - 1), the state
    nibbles = [ord(str(m["id"]).upper()) - ord("A"), (_int(m["channel"]) - 1) << 2 | (_int(m["button"]) - 1),
               WAVEMAN_STATE[str(m["state"]).upper()]]
    if not all(0 <= n < 16 for n in nibbles):
        raise ValueError("out of range")
    # nibble bit k is pair k's second half (1 = long in our convention, short in rtl_433's)
    return "PT2262", 24, _pairs([1 - (n >> k & 1) for n in nibbles for k in range(4)])


def brennenstuhl(m: dict):
    # 5 dip switches (the id, first switch the highest bit), 5 keys A–E one-hot, ON, OFF
    rid = _int(m["id"])
    key = "ABCDE".index(str(m["key"]).upper())
    on = str(m["state"]).upper() == "ON"
    if not 0 <= rid < 32:
        raise ValueError("out of range")
    bits = [rid >> (4 - i) & 1 for i in range(5)] + [int(i == key) for i in range(5)] + [int(on), int(not on)]
    return "PT2262", 24, _pairs(bits)


SILVERCREST_CHECK = (2, 3, 0, 1, 4, 5, 7, 6, 0xC, 0xD, 0xF, 0xE, 8, 9, 0xB, 0xA)


def silvercrest(m: dict):
    # rtl_433 prints only the button: the remote's own 8 bits are not in its message, so
    # all such remotes are one here (the nibbles every recorded one sends: F and 3)
    cmd = _int(m["button"])
    rtl = 0x7C26 << 16 | (0xF0 | cmd) << 8 | 0x30 | SILVERCREST_CHECK[cmd]
    return "Silvercrest", 32, ~rtl & 0xFFFFFFFF


CARDIN_DIPS = ((0, 8), (0, 16), (0, 32), (0, 64), (0, 128), (2, 128), (0, 1), (0, 2), (0, 4))
CARDIN_BUTTONS = {"11R": 3, "10R": 6, "01R": 9, "00L?": 12}


def cardin(m: dict):
    # nine tri-state dip switches ('-' off, 'o' middle, '+' on) over two bytes, the button
    dips = str(m["dipswitch"])
    if len(dips) != 9:
        raise ValueError("nine dip switches")
    b = [0, 0, CARDIN_BUTTONS[str(m["rbutton"])]]
    for (byte, bit), d in zip(CARDIN_DIPS, dips, strict=True):
        if d not in "-o+":
            raise ValueError("a dip switch is -, o or +")
        if d != "-":
            b[byte] |= bit
        if d == "+":
            b[1 if byte == 0 else 2] |= bit if byte == 0 else 64
    rtl = b[0] << 16 | b[1] << 8 | b[2]
    return "Cardin", 24, ~rtl & 0xFFFFFF


def x10(m: dict):
    return "X10", 32, _int(m["data"])


MODELS: dict[str, Mapping] = {
    "Generic-Remote": generic_remote,
    "Smoke-GS558": smoke_gs558,
    "Chuango-Security": ev1527_id_cmd,
    "Kerui-Security": ev1527_id_cmd,
    "Waveman-Switch": waveman,
    "Brennenstuhl-RCS2044": brennenstuhl,
    "Silvercrest-Remote": silvercrest,
    "Cardin-S466": cardin,
    "X10-RF": x10,
}
"""The fixed-code remote models rtl_433 reports whose frames the GPIO path decodes too. Not
here: HT680-Remote (36-bit frames), Sonoff-RM433 (its message leaves out four bits of the id),
and rolling-code remotes (KeeLoq, car keys: a new code at every press)."""
