from picobot.cli import main

raise SystemExit(main())
