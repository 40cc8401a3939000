"""virtabs-esx: the virtabs driver for VMware ESX and vCenter over pyVmomi (schemes ``esx`` and ``vpx``)."""
