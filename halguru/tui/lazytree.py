"""A Textual tree whose labels are drawn the first time they are needed: a line shown, a label read.

Textual's Tree takes every label as Rich text when its node is added, and measures every line each time it
rebuilds its lines: opening a 20,000-event run drew and measured 20,000 labels (about 9 s) before its first
frame. Here a node added with ``PENDING`` gets its label from ``draw(data)`` when it is shown or read; the
tree's width (how far it scrolls sideways) counts the lines drawn so far and grows as wider ones come into
view.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Generic, Self, TypeVar, cast

from rich.cells import cell_len
from rich.text import Text, TextType
from textual import events
from textual.geometry import Region, Size
from textual.strip import Strip
from textual.widgets import Tree
from textual.widgets._tree import _TreeLine
from textual.widgets.tree import TreeNode

T = TypeVar("T")

PENDING = Text()  # the label of a node not drawn yet: its tree draws it from the node's data


class LazyNode(TreeNode[T], Generic[T]):
    """A node whose label is drawn from its data on first use (``_label`` is what Textual reads)."""

    _drawn: Text | None = None

    @property
    def _label(self) -> Text:
        if self._drawn is None:
            self._drawn = cast("LazyTree[T]", self._tree).draw(cast(T, self.data))
        return self._drawn

    @_label.setter
    def _label(self, value: Text) -> None:
        self._drawn = None if value is PENDING else value

    @property
    def drawn(self) -> bool:
        return self._drawn is not None

    def expand(self) -> Self:
        was = self._expanded
        self._expand(False)
        cast("LazyTree[T]", self._tree).folded(self, was)
        return self

    def collapse(self) -> Self:
        was = self._expanded
        self._collapse(False)
        cast("LazyTree[T]", self._tree).folded(self, was)
        return self


class LazyTree(Tree[T], Generic[T]):
    """A Tree of ``LazyNode``: add nodes with the label ``PENDING`` and override ``draw``.

    A node added as the last child of its parent (a live run's next event) gets its line inserted where it goes
    (``_appended``); Textual rebuilt every line, measured every label and redrew every line on screen for each
    node added, so a live run cost more per event the longer it ran.
    """

    _new: TreeNode[T] | None = None  # the node being added: TreeNode.add invalidates the tree right after

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._batched = False
        self._restyled = False  # styles or size changed, not the nodes
        super().__init__(*args, **kwargs)

    @contextmanager
    def adding(self) -> Iterator[None]:
        """Add many nodes, and lay the tree out once at the end (Textual does it after each)."""
        self._batched = True
        try:
            yield
        finally:
            self._batched = False
            self._invalidate()

    def _invalidate(self) -> None:
        new, self._new = self._new, None
        if self._batched or (new is not None and not self._restyled and self._appended(new)):
            return
        if self._restyled:  # the lines are drawn again, not rebuilt: Textual walks every node for each
            self._line_cache.clear()
            self._updates += 1
            self.refresh()
            return
        super()._invalidate()

    def _appended(self, node: TreeNode[T]) -> bool:
        """Put the line of ``node``, just added as its parent's last child, in the built lines (the lines below
        it move down one); False where the lines must be rebuilt instead (none built yet, another place)."""
        lines, parent = self._tree_lines_cached, node._parent
        if lines is None or parent is None or parent._children[-1] is not node or node._children:
            return False
        at = parent._line
        if not 0 <= at < len(lines) or lines[at].node is not parent:
            return False  # the parent has no line (stale numbers after Textual's own rebuild): rebuilt
        if not parent._expanded:  # hidden under its parent: only the parent's line changes (its _updates)
            node._line = -1
            self._refresh_line(at)
            return True
        previous = parent._children[-2] if len(parent._children) > 1 else None
        last = previous  # the last line of the branch above: the new line goes after it
        while last is not None and last._expanded and last._children:
            last = last._children[-1]
        end = at + 1 if last is None else last._line + 1
        if not at < end <= len(lines) or lines[end - 1].node is not (last or parent):
            return False
        # Only the branch above changes (its guide goes on down to the new line) and the lines that move: TreeNode.add
        # counted a change of the parent, which every line under it would be drawn again for (all of them, the root)
        parent._updates -= 1
        if previous is not None:
            lines[previous._line].last = False
            previous._updates += 1
        line = _TreeLine([*lines[at].path, node], True)
        lines.insert(end, line)
        node._line = end
        for moved in lines[end + 1:]:  # the lines below: usually none, a live run adds at the end
            moved.path[-1]._line += 1
        if end + 1 < len(lines):  # the lines drawn where others are now
            drawn = list(self._line_cache.keys())  # an LRUCache: no iteration of its own
            for key in drawn:
                if cast(int, key[0]) >= end:
                    self._line_cache.discard(key)
        self.virtual_size = Size(max(self.virtual_size.width, self._line_width(line)), len(lines))
        if self.cursor_line >= end:
            self.cursor_line += 1  # the cursor stays on its node (as Textual's rebuild keeps it)
        self._refresh_from(end if previous is None else previous._line)
        return True

    def _refresh_from(self, line: int) -> None:
        """Repaint the lines on screen from ``line`` down (the branch that changed and what it moved)."""
        top, height = self.scroll_offset.y, self.size.height
        if line < top + height:
            start = max(line, top)
            self.refresh(Region(0, start - top, self.size.width, top + height - start))

    def folded(self, node: TreeNode[T], was_expanded: bool) -> None:
        """``node`` was expanded or collapsed: only its branch's lines come or go. Textual rebuilt every line
        and measured every label (1.2 s at 100,000 events) for each fold."""
        lines = self._tree_lines_cached
        at = node._line
        if self._batched or lines is None or not 0 <= at < len(lines) or lines[at].node is not node:
            self._invalidate()  # not on screen, or the lines are rebuilt anyway
            return
        if node._expanded != was_expanded:
            depth = len(lines[at].path)
            end = at + 1
            while end < len(lines) and len(lines[end].path) > depth:
                end += 1
            for line in lines[at + 1:end]:
                line.node._line = -1  # hidden now
            shown = self._branch_lines(lines[at].path) if node._expanded else []
            lines[at + 1:end] = shown
            for number, line in enumerate(lines[at + 1:], at + 1):  # the lines below move (a flat loop)
                line.path[-1]._line = number
            widest = max((self._line_width(line) for line in shown), default=0)
            self.virtual_size = Size(max(self.virtual_size.width, widest), len(lines))
            if self.cursor_node is not None:
                self.cursor_line = self.cursor_node._line if self.cursor_node._line >= 0 else at
        self._line_cache.clear()
        self._updates += 1
        self.refresh()

    def _branch_lines(self, path: list[TreeNode[T]]) -> list[_TreeLine[T]]:
        """The lines under the last node of ``path`` (an expanded node), as Tree._build makes them."""
        lines: list[_TreeLine[T]] = []

        def add(parent: list[TreeNode[T]]) -> None:
            children = parent[-1]._children
            for index, child in enumerate(children):
                child_path = [*parent, child]
                lines.append(_TreeLine(child_path, index == len(children) - 1))
                if child._expanded:
                    add(child_path)

        add(path)
        return lines

    def _line_width(self, line: _TreeLine[T]) -> int:
        return self.get_label_width(line.node) + line._get_guide_width(self.guide_depth, self.show_root)

    def notify_style_update(self) -> None:  # a focus or theme change
        self._restyled = True
        try:
            super().notify_style_update()
        finally:
            self._restyled = False

    def _on_resize(self, event: events.Resize) -> None:
        """Tree's own handler runs after this one (Textual calls each class's) and rebuilds every line: a new
        size only needs them drawn again."""
        self._restyled = True
        self.call_next(setattr, self, "_restyled", False)

    def draw(self, data: T) -> Text:
        """The label of a node added as ``PENDING``, from its data."""
        raise NotImplementedError

    def process_label(self, label: TextType) -> Text:
        if label is PENDING or (isinstance(label, Text) and "\n" not in label.plain):
            return label  # one line already: Textual's split of every label cost as much as drawing it
        return super().process_label(label)

    def _add_node(self, parent: TreeNode[T] | None, label: Text, data: T | None,
                  expand: bool = False) -> TreeNode[T]:
        node = LazyNode(self, parent, self._new_id(), label, data, expanded=expand)
        self._tree_nodes[node._id] = node
        self._new = node  # no tree-wide _updates (every line drawn again): its parent's count changes, and a
        # rebuild counts its own
        return node

    def get_label_width(self, node: TreeNode[T]) -> int:
        """The label's width as Textual measures it (its toggle icon and its text), without rendering it; a
        line not drawn yet counts as empty until it is shown."""
        if isinstance(node, LazyNode) and not node.drawn:
            return 0
        icon = max(cell_len(self.ICON_NODE), cell_len(self.ICON_NODE_EXPANDED)) if node.allow_expand else 0
        return icon + cast(Text, node.label).cell_len

    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        number = y + self.scroll_offset.y
        lines = self._tree_lines
        if number < len(lines):  # the line is drawn now: the tree scrolls sideways as far as it reaches
            width = self._line_width(lines[number])
            if width > self.virtual_size.width:
                self.virtual_size = Size(width, self.virtual_size.height)
        return strip
