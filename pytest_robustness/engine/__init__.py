"""The one owner of a pytest session's state: data, model slots, classifiers, attack runs, the memo, progress."""
