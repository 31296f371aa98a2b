"""KFP pipelines of the platform; see ``pipelines.registry`` for the convention each module follows."""
