"""autotune's built-in knobs: each module is an ordinary plugin, registered like a third party's."""
