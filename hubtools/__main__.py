from hubtools.cli import main

raise SystemExit(main())
