module dockgate/go_oracle

go 1.19
