"""Running unattended and rolling out: device side, no torch.

- `activate.py`: `edgecnn bundle activate|list`: install a bundle next to the current one under a root
  directory, verify it on the device, switch the `current` link atomically, keep N, roll back.
- `unit.py`: the systemd unit text for `edgecnn run` (`edgecnn service unit`).
- `service.py`: `edgecnn service install|uninstall|status` (systemctl, the health endpoint).
- `cli.py`: registers `edgecnn service ...` and `edgecnn bundle ...`.

The fleet side is Ansible (devices/ansible/), which calls these commands on each device.
"""
