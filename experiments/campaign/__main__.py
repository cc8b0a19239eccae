import sys

from experiments.campaign.runner import main

sys.exit(main())
