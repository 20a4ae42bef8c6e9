from typing_extensions import Buffer

def cloud(
    depth: Buffer,
    width: int,
    height: int,
    rays: Buffer,
    params: Buffer,
    color: Buffer,
    points: Buffer,
    colors: Buffer,
    mask: Buffer,
    scratch: Buffer,
    /,
) -> int: ...
