"""Import fairseq without its import-time logging side effects.

``import fairseq`` configures the root logger (``fairseq/tasks/frm_text_to_speech.py`` calls
``logging.basicConfig`` at DEBUG level, so every library's DEBUG records, matplotlib's included,
reach the terminal) and logs an unrelated ``Please install tensorboardX`` notice. When this
package is imported before fairseq (the project's commands, user scripts, the tests), fairseq is
imported here with the notice muted and the root logger left as it was. Inside fairseq's own
commands fairseq is already imported and nothing changes.
"""
import logging
import sys

_NOTICE = "fairseq.tasks.text_to_speech"


def import_fairseq_quietly():
    if "fairseq.tasks" in sys.modules:
        return
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    notice = logging.getLogger(_NOTICE)
    notice_level = notice.level
    notice.setLevel(logging.WARNING)
    try:
        import fairseq.tasks  # noqa: F401
    finally:
        notice.setLevel(notice_level)
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)
