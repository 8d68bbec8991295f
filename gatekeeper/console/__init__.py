"""The approver's console, apart from its addon (gatekeeper.addons.console): the notification
links it opens (`links`), its sign-in sessions (`sessions`) and the approver password for
offices without proxy sign-in (`password`)."""
