DROP TABLE sessions;
DROP TABLE role_profile_activities;
DROP TABLE role_profiles;
DROP TABLE users;
