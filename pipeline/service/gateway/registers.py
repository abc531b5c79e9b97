"""A camera snapshot as Modbus holding registers, by the configured register map.

Owns the encoding (docs/GATEWAY.md, "Register map"): 16-bit words, 32-bit values high
word first, the part id as ASCII two characters per register (first character in the
high byte), NUL padded and cut at 32 characters. Pure functions: no sockets.
"""

from __future__ import annotations

from pipeline.service.gateway.gateway_config import GATEWAY_FIELDS, PART_ID_REGISTERS, ModbusConfig
from pipeline.service.gateway.handshake import AckState
from pipeline.service.gateway.state import CameraSnapshot


class RegisterMap:
    def __init__(self, config: ModbusConfig):
        self.config = config
        self.offsets = dict(config.registers)
        gateway = [self.offsets[k] for k in GATEWAY_FIELDS]
        self.write_start = min(gateway)  # the contiguous range the gateway owns
        self.write_end = max(o + (PART_ID_REGISTERS if k == "part_id" else 1)
                             for k, o in self.offsets.items() if k in GATEWAY_FIELDS)

    def block_address(self, index: int) -> int:
        return self.config.base_address + index * self.config.block_size

    def ack_addresses(self, index: int) -> tuple[int, int]:
        base = self.block_address(index)
        return base + self.offsets["ack_seq_hi"], base + self.offsets["ack_seq_lo"]

    def encode(self, snap: CameraSnapshot, ack: AckState) -> list[int]:
        """The gateway-owned words, from `write_start` to `write_end`."""
        words = [0] * (self.write_end - self.write_start)
        values = {"ready": int(snap.ready), "not_ready_reason": int(snap.not_ready_reason),
                  "health": int(snap.health), "result_counter": snap.result_counter,
                  "seq_hi": (snap.seq >> 16) & 0xFFFF, "seq_lo": snap.seq & 0xFFFF,
                  "verdict": int(snap.verdict), "reason": snap.reason, "ack_state": int(ack),
                  "gaps": snap.gaps & 0xFFFF}
        for name, value in values.items():
            words[self.offsets[name] - self.write_start] = value
        at = self.offsets["part_id"] - self.write_start
        words[at:at + PART_ID_REGISTERS] = encode_text(snap.part_id, PART_ID_REGISTERS)
        return words

    def decode(self, words: list[int]) -> dict[str, int | str]:
        """The inverse of `encode` (tests and the by-hand check read blocks back with it)."""
        get = {name: words[o - self.write_start] for name, o in self.offsets.items()
               if name in GATEWAY_FIELDS and name != "part_id"}
        at = self.offsets["part_id"] - self.write_start
        seq = (get.pop("seq_hi") << 16) | get.pop("seq_lo")
        return {**get, "seq": seq, "part_id": decode_text(words[at:at + PART_ID_REGISTERS])}


def encode_text(text: str, registers: int) -> list[int]:
    raw = text.encode("ascii", "replace")[: registers * 2].ljust(registers * 2, b"\0")
    return [(raw[i] << 8) | raw[i + 1] for i in range(0, len(raw), 2)]


def decode_text(words: list[int]) -> str:
    raw = b"".join(bytes(((w >> 8) & 0xFF, w & 0xFF)) for w in words)
    return raw.rstrip(b"\0").decode("ascii", "replace")
