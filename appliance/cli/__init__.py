"""``appliancectl``: the one front door (argparse), its report rendering and the demo."""
