"""virtabs driver for VirtualBox through ``VBoxManage`` (``vbox:///session``, ``vbox+ssh://user@host/session``)."""
