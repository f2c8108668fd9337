"""Item states as the bridge tells them apart: content digests, the bridge's own attribute, visible versions.

Every state replication writes carries the bridge's attribute (`BridgeVersionAttribute`, `ddbb_v` by
default) holding its version and the digest of the rest of the item: `<digest>:<rank>.<ts>.<seq>.<origin>`
(with application stamps only on items whose change carries no stamp, and on the relay's repairs). The
digest makes the attribute *verifiable*: a local UpdateItem keeps the attribute but changes the item, a
local PutItem that copies the item does the same, so neither is ever taken for replication's own write.
A stream record's NewImage is replication's own iff it carries a verified attribute that its OldImage did not.

The **visible version** of a stored item is what the bridge can tell from the item and the relay's
record of the newest local change (`sidetable.LocalRecord`): its stamp (application stamps), its verified
attribute, or the local record's version when the item is exactly the local state that record describes;
None when the item is a local write the relay has not versioned yet.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.canonical import digest as canonical_digest
from ..core.codec import Image
from ..core.settings import VersionAttrs
from ..core.versions import Version, decode_version, encode_version, version_of
from .sidetable import LocalRecord

APPLICATION = "application"
BRIDGE = "bridge"
STAMP_MODES = (BRIDGE, APPLICATION)


def digest(image: Image) -> str:
    """A content digest of an item in canonical form (equal for boto3's bytes and Lambda's base64), 12 bytes."""
    return canonical_digest(image, size=12)


def without(image: Image, name: str) -> Image:
    """The image without one attribute."""
    return {k: v for k, v in image.items() if k != name}


@dataclass(frozen=True)
class Versions:
    """How one region reads versions off items: the stamp mode, the stamp attributes, the bridge's attribute."""

    mode: str
    attrs: VersionAttrs
    bridge_attr: str

    @property
    def bridge_owned(self) -> bool:
        """Whether every version is the bridge's (StampMode bridge)."""
        return self.mode == BRIDGE

    def content_digest(self, image: Image) -> str:
        """The digest of an item without the bridge's attribute: what identifies a local state."""
        return digest(without(image, self.bridge_attr))

    def mark(self, image: Image, version: Version) -> Image:
        """The image with the bridge's attribute set to `version` (what replication and repairs write)."""
        rest = without(image, self.bridge_attr)
        return {**rest, self.bridge_attr: {"S": f"{digest(rest)}:{encode_version(version)}"}}

    def marked(self, image: Image | None) -> Version | None:
        """The version of the bridge's attribute when it is there and the rest of the item matches its digest."""
        raw = (image or {}).get(self.bridge_attr)
        text = raw.get("S") if isinstance(raw, dict) else None
        if not isinstance(text, str) or ":" not in text or image is None:
            return None
        expected, _, encoded = text.partition(":")
        version = decode_version(encoded)
        if version is None or digest(without(image, self.bridge_attr)) != expected:
            return None
        return version

    def stamp(self, image: Image | None) -> Version | None:
        """The application's stamp (application stamps only; bridge-owned stamps ignore it)."""
        if self.bridge_owned:
            return None
        return version_of(image, self.attrs)

    def visible(self, image: Image | None, local: LocalRecord) -> Version | None:
        """The version of a stored state as far as the bridge can tell (module docstring); None when unknown."""
        if image is None:
            return None
        found = self.stamp(image) or self.marked(image)
        if found is not None:
            return found
        if local.version is not None and not local.deleted and local.digest == self.content_digest(image):
            return local.version
        return None

    def written_by_bridge(self, new: Image, old: Image | None) -> Version | None:
        """The version of a NewImage that replication (or a relay repair) wrote; None for a local write."""
        version = self.marked(new)
        if version is None:
            return None
        if old is not None and old.get(self.bridge_attr) == new.get(self.bridge_attr):
            return None
        return version
