"""Dictionary forms of the degradation transforms (thin wrappers over ``keys``).

``output_keys`` writes the result beside the input (``Degradationd(keys="hr",
output_keys="lr")`` keeps the HR target for training); without it the input is replaced.
Several keys in one call share the parameters drawn for the first.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable

from medsr.degrade.blur import SliceProfileBlur
from medsr.degrade.compose import Degradation
from medsr.degrade.downsample import Downsample
from medsr.degrade.noise import RandNoise


def _outs(keys: Sequence[Hashable], output_keys: KeysCollection | None) -> list[Hashable]:
    if output_keys is None:
        return list(keys)
    outs = [output_keys] if isinstance(output_keys, str) else list(output_keys)
    if len(outs) != len(keys):
        raise ValueError("output_keys needs one entry per key")
    return outs


class _Wrapped(MapTransform):
    def __init__(self, keys: KeysCollection, transform: Any,
                 output_keys: KeysCollection | None = None, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.transform = transform
        self.output_keys = _outs(self.keys, output_keys)

    def _apply(self, img: Any, first: bool) -> Any:
        return self.transform(img)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        first = True
        for key, out in zip(self.keys, self.output_keys):
            if key not in d:
                if self.allow_missing_keys:
                    continue
                raise KeyError(key)
            d[out] = self._apply(d[key], first)
            first = False
        return d


class SliceProfileBlurd(_Wrapped):
    def __init__(self, keys: KeysCollection, output_keys: KeysCollection | None = None,
                 allow_missing_keys: bool = False, **kwargs: Any) -> None:
        super().__init__(keys, SliceProfileBlur(**kwargs), output_keys, allow_missing_keys)


class Downsampled(_Wrapped):
    def __init__(self, keys: KeysCollection, output_keys: KeysCollection | None = None,
                 allow_missing_keys: bool = False, **kwargs: Any) -> None:
        super().__init__(keys, Downsample(**kwargs), output_keys, allow_missing_keys)


class RandNoised(Randomizable, _Wrapped):
    def __init__(self, keys: KeysCollection, output_keys: KeysCollection | None = None,
                 allow_missing_keys: bool = False, **kwargs: Any) -> None:
        _Wrapped.__init__(self, keys, RandNoise(**kwargs), output_keys, allow_missing_keys)

    def set_random_state(self, seed: int | None = None, state: Any = None) -> RandNoised:
        super().set_random_state(seed, state)
        self.transform.set_random_state(state=self.R)
        return self

    def randomize(self, data: Any = None) -> None:
        self._seed = self.transform.randomize()

    def _apply(self, img: Any, first: bool) -> Any:
        if first:
            self.randomize()
        return self.transform(img, seed=self._seed)


class Degradationd(Randomizable, _Wrapped):
    """Dictionary form of :class:`Degradation`; ``last_params`` as in the array form."""

    def __init__(self, keys: KeysCollection, output_keys: KeysCollection | None = None,
                 allow_missing_keys: bool = False, degradation: Degradation | None = None,
                 **params: Any) -> None:
        _Wrapped.__init__(self, keys, degradation or Degradation(**params), output_keys,
                          allow_missing_keys)

    def set_random_state(self, seed: int | None = None, state: Any = None) -> Degradationd:
        super().set_random_state(seed, state)
        self.transform.set_random_state(state=self.R)
        return self

    def randomize(self, data: Any = None) -> None:
        self.transform.randomize()

    @property
    def last_params(self) -> dict[str, Any]:
        return self.transform.last_params

    def _apply(self, img: Any, first: bool) -> Any:
        if first:
            self.randomize()
        return self.transform(img, randomize=False)
